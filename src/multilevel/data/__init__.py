"""The data layer: the schema of a model and its in-memory frame (pandas, polars or pyarrow
tables), with every check of the data before a fit."""

from .frame import ModelFrame, ReTerm, build_frame
from .schema import Schema, TermSchema
from .table import to_pandas

__all__ = ["ModelFrame", "ReTerm", "Schema", "TermSchema", "build_frame", "to_pandas"]
