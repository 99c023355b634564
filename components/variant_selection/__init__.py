"""VariantSelector: picks the best blessed normalization variant and reports the comparison."""
