"""The Fruits! feature pipeline as a plain PySpark library (no Dagster import).

Functions here take a SparkSession and paths, and return DataFrames or write Parquet.
"""
