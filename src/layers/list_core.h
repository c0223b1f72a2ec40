/* Data, input and plumbing layers. */
