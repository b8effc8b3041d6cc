{{ replica_model('BspaohTransporter') }}
