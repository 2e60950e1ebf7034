"""The NLP articles' applications as task models: a backbone plus the heads, losses and decoding of one task
(classification, SPO extraction, NL2SQL, reading comprehension, retrieval, dialogue, QA-pair generation), and the
project's own pretrained character BERT. Each file holds one task; names are exported here."""
from .classification import SequenceClassifier, load_sequence_classifier, save_sequence_classifier
from .extraction import SpanPointer, SubjectObjectExtractor, decode_triples, pair_spans, spo_training_batch
from .nl2sql import (NL2SQLDecoder, NL2SQLEncoder, NL2SQLModel, NL2SQLOutput, SQLQuery, Table,  # nl2sql (nlp/03)
                     execute, execution_match, logic_form_accuracy, logic_form_match)
from .reading import (DGCNNReader, MixedCharWordEmbedding, PlainDilatedConv1d, ReaderOutput,  # nlp/06, nlp/07
                      align_word_ids, extract_spans, span_answers, span_focal_loss)
from .mlm_reading import ReadingExample, read_answers, reading_examples, slot_reader_batch, train_slot_reader
from .retrieval import OBJECTIVES, SentenceEncoder, cosine_gap, encode_sentences, evaluate_retrieval, train_sentence_encoder
from .dialog import ChatBot, DialogCollator, DialogFormat, build_dialog_lm, dialog_lm_loss, train_dialog_lm
from .qa_generation import QAPairGenerator  # qa generation (nlp/10)
from .seq2seq import collate_seq2seq, encode_seq2seq, seq2seq_loss, train_seq2seq
from .char_bert import CHAR_BERT_BUDGETS, char_bert_recipe, char_tokenizer, kexue_cache_dir, pretrained_char_bert
from .sentiment import (SENTIMENT_BUDGETS, FineTunedSentiment, char_bert_classifier, classifier_accuracy,  # nlp/11-12
                        encode_examples, fine_tune_sentiment, fit_classifier, sentiment_data)
from .theseus import StepReplacementSchedule, theseus_compress  # nlp/11

__all__ = sorted(n for n in dir() if not n.startswith("_"))
