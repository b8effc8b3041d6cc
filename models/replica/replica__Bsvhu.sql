{{ replica_model('Bsvhu') }}
