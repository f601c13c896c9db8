"""Hand-written OpenCL C templates, installed as package data."""
