{{ replica_model('BsddTransporter') }}
