"""Dagster definitions of the Fruits! pipeline: thin assets over the `spark` library."""

import warnings

import dagster as dg

# backfill_policy (single-run backfills) is a deliberate choice; its beta notice is noise.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
