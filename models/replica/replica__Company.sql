{{ replica_model('Company') }}
