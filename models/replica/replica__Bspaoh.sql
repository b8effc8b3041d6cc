{{ replica_model('Bspaoh') }}
