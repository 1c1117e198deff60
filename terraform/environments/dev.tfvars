# The dev environment: sizing and policy (committed). With the deployment's own values:
#   terraform -chdir=terraform plan -var-file=environments/dev.tfvars \
#     -var-file=environments/dev.deployment.tfvars
environment               = "dev"
redis_tier                = "BASIC"    # one node
cache_type                = "instance" # one node, RDB snapshots hourly
redis_cluster_shard_count = 3          # used when cache_type is cluster
redis_cluster_node_type   = "REDIS_SHARED_CORE_NANO"
redis_memory_size_gb      = 1
recommend_min_instances   = 0 # cold starts allowed
dataflow_max_workers      = 2
force_destroy             = true # `terraform destroy` empties the buckets
