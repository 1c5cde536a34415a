"""Choose-format pass: each weighted layer is stored dense or in relative index, whichever
stores fewer bits (the break-even rule, from the real bit costs of both encodings)."""

from __future__ import annotations

from ...layers.weights import codebook_for
from ...sparse import choose_format, signed_width
from ..graph import LayerGraph


def run(graph: LayerGraph, word_bits: int = 32, force: str | None = None,
        max_filler_rate: float | None = None) -> None:
    """``force``: "dense" or "relative" for every layer instead of the smaller;
    ``max_filler_rate``: cap on fillers per relative-index entry (see ``best_index_bits``)."""
    for node in graph.nodes_of("conv", "linear"):
        q = node.quant
        codebook = codebook_for(q["weight_bits"])
        codes = codebook.encode(q["levels"])
        node.quant["codebook"] = codebook
        # Biases are int32 in arithmetic but stored at the width their values need.
        node.quant["bias_bits"] = signed_width(q["bias"])
        node.quant["choice"] = choose_format(codes, codebook, bias_count=codes.shape[0],
                                             bias_bits=node.quant["bias_bits"], word_bits=word_bits,
                                             force=force, max_filler_rate=max_filler_rate)
