{{ replica_model('Form') }}
