{{ replica_model('BsvhuTransporter') }}
