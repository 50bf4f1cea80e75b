"""Savings: metered (CalTRACK daily through opendsm), lighting (by cause), tariffs and factors.

`job.py` is the periodic savings job (`maillage processor savings`); `metered.py` keeps opendsm
behind one function and imports it lazily; `tariffs.py` is pure pricing; `lighting.py` computes
the lighting savings.
"""
