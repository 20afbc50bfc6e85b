"""The run directory: layout and atomic writes, the record it holds, listing runs."""
