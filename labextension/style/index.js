import './base.css';
import './panel.css';
import './logViewer.css';
