import './base.css';
import './store.css';
