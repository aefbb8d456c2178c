"""Small shims for the pinned dependency stack (see constraints.txt)."""
