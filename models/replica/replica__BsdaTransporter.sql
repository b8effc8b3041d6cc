{{ replica_model('BsdaTransporter') }}
