"""Trackdéchets warehouse: loaders, simulator, extractor and exports around a dbt project."""

__version__ = "0.1.0"
