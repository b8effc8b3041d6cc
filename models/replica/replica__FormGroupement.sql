{{ replica_model('FormGroupement') }}
