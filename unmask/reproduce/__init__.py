"""``unmask reproduce``: a paper table as a study file -> a plan of runs -> trained rows, evaluated, side by side."""
