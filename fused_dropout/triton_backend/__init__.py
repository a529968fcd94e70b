"""The Triton backend: kernels (kernels.py) and their launchers (launch.py). Imported on first use only."""
