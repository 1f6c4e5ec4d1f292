"""Data modules and the built-in demo data of lightning-adapt."""
