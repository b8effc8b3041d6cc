{{ replica_model('BsffFicheIntervention') }}
