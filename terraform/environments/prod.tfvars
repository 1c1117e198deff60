# The prod environment: sizing and policy (committed). With the deployment's own values:
#   terraform -chdir=terraform plan -var-file=environments/prod.tfvars \
#     -var-file=environments/prod.deployment.tfvars
environment               = "prod"
redis_tier                = "STANDARD_HA" # replica and failover
cache_type                = "cluster"     # shards with a replica each, AOF
redis_cluster_shard_count = 3             # used when cache_type is cluster
redis_cluster_node_type   = "REDIS_HIGHMEM_MEDIUM"
redis_memory_size_gb      = 5
recommend_min_instances   = 1 # one warm instance
dataflow_max_workers      = 8
force_destroy             = false # buckets holding objects survive `terraform destroy`
