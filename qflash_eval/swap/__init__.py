"""Swapping timm's attention for an integer variant: core.py (what every swapped module shares),
sdpa_route.py (the general mechanism), hand_written.py (modules that attend by hand), registry.py (the one
list of classes handled and refused), find.py (finding them in a model), listing.py (--list-models)."""
