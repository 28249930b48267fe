"""The benchmark: the asset graph through Dagster beside a plain PySpark job on the same input.

`retail-assets bench` (see `runner.py`) generates a workload (`workload.py`), runs the pipeline
and the baseline (`baseline.py`) each in its own process while sampling their memory
(`measure.py`), proves both wrote the same Gold (`compare.py`) and reports (`report.py`).
"""
