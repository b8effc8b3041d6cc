{{ replica_model('BsffTransporter') }}
