"""unmask: generalizable face-forgery (deepfake) detection.

Subpackages: ``data`` (decode, faces, crops, prepared store, dataset adapters), ``synthesis``
(pseudo-fakes), ``models`` (backbones and method networks), ``methods`` (training methods),
``train`` (the loop), ``evaluate`` (metrics and protocols), ``explain`` (heat maps).
"""

__version__ = "0.1.0"
