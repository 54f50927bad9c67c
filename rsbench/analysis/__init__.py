"""Certified accuracy curves, ACR and summary tables from certify CSVs."""
