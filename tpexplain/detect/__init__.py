"""Whose pose: finding the people in a photo (`people`) and choosing the one a command explains (`select`)."""
