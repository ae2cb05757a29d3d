"""The names the Dagster layer shares with its readers, spelled once: asset keys, check keys and
the metadata keys the assets record (read back by the demo, the sensors and the tests).

A check key names its asset, so a check's spec and its results cannot disagree on it. The list
of assets is the definitions' (`fruits_assets.definitions.defs`), not repeated here.
"""

import dagster as dg

GROUP = "fruits"

# Assets
RAW_IMAGES = dg.AssetKey("raw_images")
IMAGE_FEATURES = dg.AssetKey("image_features")
PCA_MODEL = dg.AssetKey("pca_model")
REDUCED_FEATURES = dg.AssetKey("reduced_features")
FEATURE_QUALITY = dg.AssetKey("feature_quality")

# Checks, each on its asset
STORAGE_IN_EU = dg.AssetCheckKey(RAW_IMAGES, "storage_in_eu")
EVERY_IMAGE_ACCOUNTED = dg.AssetCheckKey(IMAGE_FEATURES, "every_image_accounted")
VECTORS_FINITE = dg.AssetCheckKey(IMAGE_FEATURES, "vectors_finite")
REJECT_RATE = dg.AssetCheckKey(IMAGE_FEATURES, "reject_rate")
EXPLAINED_VARIANCE = dg.AssetCheckKey(PCA_MODEL, "explained_variance")
MATCHES_FEATURES = dg.AssetCheckKey(REDUCED_FEATURES, "matches_features")
PROBE_KEEPS_ACCURACY = dg.AssetCheckKey(FEATURE_QUALITY, "probe_keeps_accuracy")  # a warning

# Metadata of the check results
DETAILS = "details"  # beside it, each numeric detail as its own entry (the Plots tab)
STAGED_AT = "staged_at"  # the staged snapshot the checks read, as SQL

# Metadata of the materializations (Dagster's own: dagster/row_count, dagster/column_schema...)
ROW_COUNT = "dagster/row_count"
COLUMN_SCHEMA = "dagster/column_schema"
COLUMN_LINEAGE = "dagster/column_lineage"
# raw_images
IMAGES_PER_DATE = "images_per_date"
IMAGES_PER_LABEL = "images_per_label"
TOTAL_BYTES = "total_bytes"
MANIFESTS_URI = "manifests"
# image_features
REJECT_COUNT = "reject_count"
REJECT_SHARE = "reject_share"  # what the check reject_rate measured
PER_DATE = "per_date"  # also reduced_features'
REJECTS = "rejects"
WEIGHTS_SOURCE = "weights_source"
WEIGHTS_SHA256 = "weights_sha256"  # also pca_model's
INFERENCE_ENGINE = "inference_engine"
MODEL_BUILDS = "model_builds"
WORKER_PEAK_RSS_MB = "worker_peak_rss_mb"
SPARK_APPLICATION_ID = "spark_application_id"
SPARK_UI = "spark_ui"
DURATION_S = "duration_s"
IMAGES_PER_S = "images_per_s"
# Lineage of a table's materialization (also reduced_features'): the table, and the snapshot
# of `main` that published it (also the data version).
TABLE = "table"
SNAPSHOT_ID = "snapshot_id"
TABLE_LOCATION = "table_location"
# pca_model
VERSION = "version"
MODEL_URI = "model_uri"
ROWS_USED = "rows_used"
ROWS_PER_DATE = "rows_per_date"
FEATURES_SNAPSHOT = "features_snapshot"  # also reduced_features'
CUMULATIVE_EXPLAINED_VARIANCE = "cumulative_explained_variance_"  # + a number of components
EXPLAINED_VARIANCE_PLOT = "explained_variance_plot"
EXPLAINED_VARIANCE_AT_K = "explained_variance_at_k"
PCA_K = "pca_k"  # also reduced_features' and feature_quality's
VARIANCE_TARGET = "variance_target"
# reduced_features
PCA_VERSION = "pca_version"
SWITCHED_DATES = "switched_dates"  # moved to the current PCA version in the same commit
# table maintenance (fruits_assets.maintenance), on each table's asset
MAINTENANCE = "maintenance"
SNAPSHOTS_KEPT = "snapshots_kept"
ORPHAN_FILES_DELETED = "orphan_files_deleted"
# erase_image's observation on each asset it erased from
ERASED_PATH = "erased_path"
ROWS_REMOVED = "rows_removed"
AUDIT_RECORD = "audit_record"
# feature_quality
ACCURACY = "accuracy_"  # + a variant: full, reduced, k<N> (spark.probe)
BALANCED_ACCURACY = "balanced_accuracy_"  # + a variant
MACRO_F1 = "macro_f1_"  # + a variant
ACCURACY_RATIO = "accuracy_ratio"  # reduced / full; absent when full accuracy is 0
ACCURACY_RATIO_LOW = "accuracy_ratio_low"  # the bootstrap interval's bounds
ACCURACY_RATIO_HIGH = "accuracy_ratio_high"
MIN_PROBE_RATIO = "min_probe_ratio"
PROBE_VERDICT = "probe_verdict"  # keeps, loses or inconclusive (spark.probe.verdict)
PROBE_INCONCLUSIVE = "probe_inconclusive"  # why the data supports no verdict
MAJORITY_SHARE = "majority_share"  # the held-out rows' most common label's share
VARIANCE_AT_CURRENT_K = "cumulative_explained_variance_current_k"
ROWS_TRAIN = "rows_train"
ROWS_TEST = "rows_test"
GROUPS_TRAIN = "groups_train"
GROUPS_TEST = "groups_test"
ROWS_PER_LABEL = "rows_per_label"
PROBE_KS = "probe_ks"
PROBE_REG_PARAM = "probe_reg_param"  # the λ of every fit, chosen by cross-validation
PROBE_ITERATIONS = "probe_iterations"  # variant -> iterations of its fit
PROBE_FITS_AT_MAX_ITER = "probe_fits_at_max_iter"  # fits stopped by the limit
DATES_NOT_REDUCED = "dates_not_reduced"  # feature dates the current PCA has not reduced yet
PROBE_PLOT = "probe_plot"
PROBE_PNG = "probe_png"

# Columns of the count tables (images_per_date, per_date, ...)
UPLOAD_DATE = "upload_date"
LABEL = "label"
N_IMAGES = "images"
N_FEATURES = "features"
N_REJECTS = "rejects"
N_REDUCED = "reduced"
N_ROWS = "rows"
