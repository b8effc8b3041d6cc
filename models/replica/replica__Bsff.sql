{{ replica_model('Bsff') }}
