{{ replica_model('Bsda') }}
