"""Mapping: source columns → canonical events, column-wise (``mapper``)."""
