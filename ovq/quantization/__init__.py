"""INT8 with NNCF, optionally under an accuracy budget, and the report of what it cost."""
