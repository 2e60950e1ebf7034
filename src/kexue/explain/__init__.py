"""kexue.explain: integrated gradients and token heat maps (https://kexue.fm/archives/7533)."""
from .heatmap import to_ansi, to_html, to_text, token_colors
from .integrated_gradients import METHODS, integrated_gradients, quadrature
from .token_ig import TokenAttribution, TokenIntegratedGradients

__all__ = ["integrated_gradients", "quadrature", "METHODS", "TokenIntegratedGradients", "TokenAttribution",
           "to_html", "to_ansi", "to_text", "token_colors"]
