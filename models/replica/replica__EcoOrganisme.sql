{{ replica_model('EcoOrganisme') }}
