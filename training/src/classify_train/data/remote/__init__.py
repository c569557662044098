"""Downloading the data sets: the pinned manifest, resumable downloads, the IMDb archive conversion."""
