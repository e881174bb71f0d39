"""Forecasting services: demand history, the safety-stock math, recompute, apply, overrides, backtest."""
