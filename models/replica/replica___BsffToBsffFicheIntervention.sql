{{ replica_model('_BsffToBsffFicheIntervention') }}
