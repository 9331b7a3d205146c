"""Trusting CDS clients (CDS Hooks 2.0.1): verification of the EHR's signed JWT."""
