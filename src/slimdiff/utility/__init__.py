"""Downstream utility: does training a small lesion segmenter on synthetic pairs help on real test slices?"""
