{{ replica_model('BsffPackaging') }}
