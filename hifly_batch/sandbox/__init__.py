"""Local emulation of the HiFly API for rehearsals and tests."""
