"""AWS provisioning and operations: buckets, IAM roles and policies, the model weights, the
cluster's wheelhouse and bootstrap action, the EMR cluster, its cost, its doctor, GDPR erasure."""
