"""NL2SQL baseline (基于Bert的NL2SQL模型：一个简明的Baseline, https://kexue.fm/archives/6771): the logic form and
its table, the encoder of inputs and labels, the four-head model, the table-aware decoder, logic-form and
execution accuracy."""
from .decoder import NL2SQLDecoder, condition_spans
from .encoder import NL2SQLEncoder
from .execute import execute, execution_match
from .model import ColumnAttention, NL2SQLModel, NL2SQLOutput
from .query import AGG_NAMES, CONN_NAMES, OP_NAMES, SQLQuery, Table, cell_text, logic_form_accuracy, logic_form_match
from .text import edit_distance, is_number, locate_value, most_similar

__all__ = ["AGG_NAMES", "CONN_NAMES", "OP_NAMES", "ColumnAttention", "NL2SQLDecoder", "NL2SQLEncoder", "NL2SQLModel",
           "NL2SQLOutput", "SQLQuery", "Table", "cell_text", "condition_spans", "edit_distance", "execute",
           "execution_match", "is_number", "locate_value", "logic_form_accuracy", "logic_form_match", "most_similar"]
