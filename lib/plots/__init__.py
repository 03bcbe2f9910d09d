"""Plotly figures: `make_*_figure` functions that take plain data and return `go.Figure`s."""
