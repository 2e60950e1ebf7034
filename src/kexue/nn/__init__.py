"""Layers and losses of the articles and their functional forms; the attention and KV cache every model uses.

Evaluation helpers live in `kexue.metrics`, ODE solvers in `kexue.ode`, corpus statistics in `kexue.corpus`;
the names used across modules are listed in docs/naming.md."""
from .attention import MultiHeadAttention, mask_to_bias
from .capsule import squash, Capsule, capsule_lengths, margin_loss, EMRouting, em_m_step
from .crf import CRF, ViterbiDecoder
from .dgcnn import DilatedGatedConv1d, DGCNNBlock, DGCNN
from .feedforward import FeedForward, activation
from .kv_cache import KVCache
from .losses import (
    kl_std_normal, kl_diag_normals, ClassPrior, VAELoss, focal_loss, binary_focal_loss,
    multilabel_categorical_crossentropy, masked_cross_entropy, seq2seq_lm_loss
)
from .margin import (
    CosineClassifier, margin_logits, MarginSoftmaxLoss, AMSoftmaxLoss, ArcFaceLoss
)
from .nce import (
    nce_loss, NCELoss, NoiseDistribution, UnigramSampler, GaussianNoiseDistribution, negative_sampling_loss,
    SkipGramNS
)
from .norm import ConditionalLayerNorm, ScaleShift
from .on_lstm import cumax, ONLSTMCell, ONLSTM, syntactic_distance
from .pooling import AttentionPooling1d, MaskedMaxPool1d, MaskedAvgPool1d
from .position import sinusoidal_table, RotaryEmbedding, nezha_relative_table, T5RelativeBias
from .quantize import straight_through, code_perplexity, VQOutput, VectorQuantizer
from .reparam import (
    normal_rsample, reparameterize, GaussianHead, sample_gumbel, gumbel_max_sample, gumbel_softmax,
    TemperatureSchedule, score_function_surrogate, exact_discrete_expectation, categorical_kl_to_uniform
)
from .rnn import unroll, SimpleRNNCell, MaskedBiRNN
from .sparse_attention import (
    sparse_attention_mask, allowed_pairs, sparse_attention, SparseSelfAttention,
    AtrousSelfAttention, LocalSelfAttention, StridedSelfAttention
)

__all__ = [
    'MultiHeadAttention', 'mask_to_bias', 'squash', 'Capsule', 'capsule_lengths', 'margin_loss', 'EMRouting',
    'em_m_step', 'CRF', 'ViterbiDecoder', 'DilatedGatedConv1d', 'DGCNNBlock', 'DGCNN', 'FeedForward', 'activation', 'KVCache',
    'kl_std_normal', 'kl_diag_normals', 'ClassPrior', 'VAELoss', 'focal_loss', 'binary_focal_loss',
    'multilabel_categorical_crossentropy', 'masked_cross_entropy', 'seq2seq_lm_loss',
    'CosineClassifier', 'margin_logits',
    'MarginSoftmaxLoss', 'AMSoftmaxLoss', 'ArcFaceLoss', 'nce_loss', 'NCELoss',
    'NoiseDistribution', 'UnigramSampler', 'GaussianNoiseDistribution', 'negative_sampling_loss', 'SkipGramNS',
    'ConditionalLayerNorm', 'ScaleShift', 'cumax', 'ONLSTMCell', 'ONLSTM', 'syntactic_distance',
    'AttentionPooling1d', 'MaskedMaxPool1d', 'MaskedAvgPool1d',
    'sinusoidal_table', 'RotaryEmbedding', 'nezha_relative_table', 'T5RelativeBias', 'straight_through',
    'code_perplexity', 'VQOutput', 'VectorQuantizer', 'normal_rsample', 'reparameterize', 'GaussianHead',
    'sample_gumbel', 'gumbel_max_sample', 'gumbel_softmax', 'TemperatureSchedule', 'score_function_surrogate',
    'exact_discrete_expectation', 'categorical_kl_to_uniform', 'unroll', 'SimpleRNNCell', 'MaskedBiRNN',
    'sparse_attention_mask',
    'allowed_pairs', 'sparse_attention', 'SparseSelfAttention', 'AtrousSelfAttention',
    'LocalSelfAttention', 'StridedSelfAttention'
]
