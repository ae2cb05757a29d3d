"""Daily partitions by upload date, from the configured first date."""

import dagster as dg

from spark.settings import Settings

UPLOAD_DATES = dg.DailyPartitionsDefinition(start_date=Settings.load().partitions_start)
# A backfill of N dates is one run and one Spark job reading context.partition_keys.
ONE_RUN_PER_BACKFILL = dg.BackfillPolicy.single_run()
