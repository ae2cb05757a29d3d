"""Daily partitions by upload date."""

import dagster as dg

# A code constant, not configuration: the partition keys are the assets' identity in Dagster's
# run history, the same in every deployment, and the asset graph is built before any
# deployment's values are read; moving the start is a change of the code.
PARTITIONS_START = "2026-11-01"
UPLOAD_DATES = dg.DailyPartitionsDefinition(start_date=PARTITIONS_START)
# A backfill of N dates is one run and one Spark job reading context.partition_keys.
ONE_RUN_PER_BACKFILL = dg.BackfillPolicy.single_run()
