{{ replica_model('Bsdasri') }}
