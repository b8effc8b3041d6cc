{{ replica_model('StatusLog') }}
